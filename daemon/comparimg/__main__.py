"""`python -m comparimg` runs the command line."""

from comparimg.cli import main

raise SystemExit(main())
