"""``cplugind``: the event-plugin host (``host.py``), its status hash (``status.py``) and entry point (``main.py``)."""
