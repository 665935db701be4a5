"""Stage 7: studies (spec -> run graph -> runs identified by config hash), the SQLite results store,
the paper's table layouts, plots and the CPU demo.  See docs/studies.md."""
