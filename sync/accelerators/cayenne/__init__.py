"""Cayenne: a table kept as immutable Vortex files listed in a SQLite metastore.

``spec`` declares the engine (and loads without ``vortex``); ``engine`` is the accelerator,
``metastore`` the SQLite catalog, ``files`` the Vortex files, ``query`` the read-only handle.
"""
