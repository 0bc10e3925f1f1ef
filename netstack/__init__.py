"""netstack: the sans-IO TCP/IP core, the socket API and both stacks behind it."""
