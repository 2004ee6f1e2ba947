"""The `ev-terminal` entry point and the harnesses that run the terminal together with the
reference gateway (scripted simulation, demo). The only package that imports both."""
