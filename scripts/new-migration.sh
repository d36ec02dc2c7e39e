#!/usr/bin/env bash
# Creates migration/src/mYYYYMMDD_HHMMSS_<name>.rs with an up and a down, and registers it.
set -euo pipefail
name=${1:-}
if [[ ! "$name" =~ ^[a-z][a-z0-9_]*$ ]]; then
  echo "usage: make makemigration NAME=<module>_<action> (lowercase, underscores)" >&2
  exit 1
fi
cd "$(dirname "$0")/.."
module="m$(date -u +%Y%m%d_%H%M%S)_${name}"
file="migration/src/${module}.rs"
cat > "$file" <<RUST
//! Describe what this migration changes, and why.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("").await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.get_connection().execute_unprepared("").await?;
        Ok(())
    }
}
RUST
# Register: a `mod` line after the last one, and a Box::new entry at the end of the list.
python3 - "$module" <<'PY'
import re, sys
module = sys.argv[1]
path = "migration/src/lib.rs"
text = open(path).read()
mods = list(re.finditer(r"^mod m\d{8}_\d{6}_\w+;$", text, re.M))
text = text[: mods[-1].end()] + f"\nmod {module};" + text[mods[-1].end():]
boxes = list(re.finditer(r"^\s*Box::new\(m\d{8}_\d{6}_\w+::Migration\),$", text, re.M))
text = text[: boxes[-1].end()] + f"\n            Box::new({module}::Migration)," + text[boxes[-1].end():]
open(path, "w").write(text)
PY
echo "created $file (write its up and down SQL)"
