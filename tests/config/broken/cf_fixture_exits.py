"""A handler module that calls sys.exit() while being imported: validate must survive it."""

import sys

sys.exit(3)
