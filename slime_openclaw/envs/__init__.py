"""General-agent environments (terminal, tool-call, SWE, GUI) behind one interface."""
