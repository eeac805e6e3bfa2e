"""``python -m irisflow.cli``: how ``irisflow up`` starts each role's process."""

from irisflow.cli.main import main

main()
