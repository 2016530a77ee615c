"""`python -m albert_dish`: see albert_dish.cli."""
import sys

from albert_dish.cli import main

sys.exit(main())
