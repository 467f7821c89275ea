"""notetaker backend for py-cord."""
