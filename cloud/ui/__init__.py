"""The cloud controller's web console at ``/ui`` (server-rendered pages over the services).

See docs/arch/console.md. ``mount_console`` is called by ``cloud.api.app.create_app``.
"""

from cloud.ui.routes import mount_console

__all__ = ["mount_console"]
