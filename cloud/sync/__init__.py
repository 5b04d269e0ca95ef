"""Cloud side of edge sync: consume node messages, merge memory, rebroadcast, commands.

Entry point: :class:`cloud.sync.hub.CloudSync`.
"""
