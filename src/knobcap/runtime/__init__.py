"""Runtime without torch: the streaming engine, export to other formats, automation."""
