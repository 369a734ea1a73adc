"""forgelab's built-in plugins: modules of ``@hookimpl`` functions only.

They are loaded through the ``forgelab`` entry-point group like any third-party plugin, and name
their factories and config classes as import strings so that listing stays fast.
"""
