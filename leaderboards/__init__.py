"""Published leaderboards (one JSON file per collapse or toy task) and their JSON Schema, shipped with the package."""
