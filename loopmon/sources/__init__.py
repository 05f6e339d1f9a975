"""The window's snapshot sources (layer 6): in-process runner, remote stream, recording file,
one interface (shared/DESIGN.md). ``recording`` plays a recording file into a Mailbox."""
