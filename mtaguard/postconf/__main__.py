"""
C{python -m mtaguard.postconf}: the same as C{mtaguard-postconf}.
"""

import sys

from mtaguard.postconf import main

sys.exit(main())
