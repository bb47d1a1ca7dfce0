"""``python -m orchestrator.acl``: write the broker's password and ACL files."""
import sys

from . import main

sys.exit(main())
