"""The application of tests/config/realistic/circus.ini: its hooks must import (resolve.py)."""
