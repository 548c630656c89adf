"""Command-line interface: one small module per subcommand, registered in :mod:`.main`."""
