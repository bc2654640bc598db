"""`import minidarts.functional as F` keeps working: this name is the module
minidarts.nn.functional itself (not a copy), where the functional interface lives."""

import sys

from .nn import functional

sys.modules[__name__] = functional
