"""Tools in the controller pattern: one class per tool, mounted by the router at its ROUTE."""
