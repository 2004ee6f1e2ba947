"""Simulated card profiles (``*.card`` data files), a package so they ship as package data."""
