"""Leadgate: the HTTP gateway and the lead domain it owns."""
