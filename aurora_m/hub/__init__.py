"""Hub: model cards with lineage, mixture and eval results; export folders (pushing comes next)."""
