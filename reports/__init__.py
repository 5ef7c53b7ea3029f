"""Results files -> paper tables, plots and a report page. Reads files only; never imports torch."""
