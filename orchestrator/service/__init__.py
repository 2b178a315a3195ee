"""The services the engine talks to (CSBS v1, CBR v3), behind one small protocol."""
