"""pytest plugin for aioshare (registered through the ``pytest11`` entry point).

The fixtures arrive with the embedded broker and the runtime; until then the plugin only
registers itself so that installing aioshare never breaks a project's pytest run.
"""
