"""Built-in sweep specs (`tokenpacker sweep NAME`): tiny, the suite's main job, and smoke, for CI."""
