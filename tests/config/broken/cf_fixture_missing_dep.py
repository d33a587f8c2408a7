"""A handler module that exists but imports a package that does not."""

import cf_no_such_dependency_xyz  # noqa: F401
