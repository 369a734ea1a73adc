"""Fails at import, the way a plugin with a missing dependency does."""

import forgelab_dependency_that_is_not_installed  # noqa: F401
