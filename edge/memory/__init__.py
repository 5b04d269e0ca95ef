"""The node's memory pool: long-term knowledge store (``store``), LWW-merged by HLC."""
