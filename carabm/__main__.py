"""``python -m carabm`` runs the command-line interface."""

from carabm.cli import main

raise SystemExit(main())
