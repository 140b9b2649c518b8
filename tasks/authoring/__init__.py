"""What a module's author writes against: the decorators, events, injection by parameter
name, event ids and templates. Imports only ``tasks.errors`` and ``tasks.storage``."""
