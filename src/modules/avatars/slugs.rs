//! Avatar slugs: the short names OpenAI clients give as `model` (`support-bot`), unique among
//! a project's live avatars (a partial unique index). Lowercase ASCII letters and digits in
//! words joined by single dashes; never shaped like a UUID, since a model is named by its
//! avatar's id or its slug.

use std::collections::HashSet;

use sea_orm::{ConnectionTrait, DbBackend, DbErr, Statement};
use uuid::Uuid;

use crate::core::ids::{AvatarId, ProjectId};

use super::domain::errors::AvatarsError;

/// The longest slug.
pub(super) const MAX_LEN: usize = 64;

/// What a slug taken from a name falls back to when the name has no letter or digit.
const FALLBACK: &str = "avatar";

/// A slug a client chose: well formed, and not a UUID.
pub(super) fn check(slug: &str) -> Result<(), AvatarsError> {
    let well_formed = slug.len() <= MAX_LEN
        && slug.split('-').all(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit())
        });
    if !well_formed {
        return Err(AvatarsError::invalid(
            "slug",
            format!(
                "use lowercase letters and digits in words joined by single dashes, at most \
                 {MAX_LEN} characters (e.g. `support-bot`)"
            ),
        ));
    }
    if Uuid::parse_str(slug).is_ok() {
        return Err(AvatarsError::invalid(
            "slug",
            "must not be a UUID: a model is named by its avatar's id or by its slug",
        ));
    }
    Ok(())
}

/// The slug `name` suggests: transliterated to ASCII, lowercase words joined by dashes, short
/// enough for a `-<n>` suffix.
pub(super) fn from_name(name: &str) -> String {
    let mut slug = slug::slugify(name);
    slug.truncate(MAX_LEN - 4);
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() || Uuid::parse_str(slug).is_ok() {
        FALLBACK.to_owned()
    } else {
        slug.to_owned()
    }
}

/// `base`, else `base-2`, `base-3`, ...: the first no live avatar of the project has. The
/// caller holds the project's avatar creations in line (the plan slot's row lock), and the
/// unique index catches what else may race.
pub(super) async fn first_free<C: ConnectionTrait>(
    conn: &C,
    project_id: ProjectId,
    base: &str,
) -> Result<String, DbErr> {
    let rows = conn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT slug FROM avatars WHERE project_id = $1 AND deleted_at IS NULL \
               AND (slug = $2 OR slug LIKE $2 || '-%')",
            [project_id.into(), base.to_owned().into()],
        ))
        .await?;
    let taken = rows
        .iter()
        .map(|row| row.try_get::<String>("", "slug"))
        .collect::<Result<HashSet<_>, _>>()?;
    if !taken.contains(base) {
        return Ok(base.to_owned());
    }
    Ok((2..)
        .map(|n| format!("{base}-{n}"))
        .find(|candidate| !taken.contains(candidate))
        .unwrap_or_else(|| base.to_owned()))
}

/// Whether another live avatar of the project than `except` has `slug`.
pub(super) async fn taken<C: ConnectionTrait>(
    conn: &C,
    project_id: ProjectId,
    slug: &str,
    except: Option<AvatarId>,
) -> Result<bool, DbErr> {
    let row = conn
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT EXISTS (SELECT 1 FROM avatars WHERE project_id = $1 AND slug = $2 \
               AND deleted_at IS NULL AND id IS DISTINCT FROM $3) AS taken",
            [
                project_id.into(),
                slug.to_owned().into(),
                except.map(|id| id.uuid()).into(),
            ],
        ))
        .await?;
    Ok(row
        .map(|row| row.try_get::<bool>("", "taken"))
        .transpose()?
        .unwrap_or(false))
}

#[cfg(test)]
mod tests {
    use super::{check, from_name};

    #[test]
    fn names_become_slugs_and_odd_names_fall_back() {
        assert_eq!(from_name("Support Bot"), "support-bot");
        assert_eq!(from_name("  Ärger & Café — FAQ!  "), "arger-cafe-faq");
        assert_eq!(from_name("!!!"), "avatar");
        assert_eq!(from_name("01a241a6-a01a-7358-86ce-63cbabcdf47b"), "avatar");
        let long = from_name(&"word ".repeat(40));
        assert!(long.len() <= 60 && !long.ends_with('-'), "{long}");
    }

    #[test]
    fn chosen_slugs_are_checked() {
        assert!(check("support-bot").is_ok());
        assert!(check("v2").is_ok());
        for bad in [
            "",
            "Support",
            "two--dashes",
            "-lead",
            "trail-",
            "sp ace",
            "ünï",
            "01a241a6-a01a-7358-86ce-63cbabcdf47b",
            "01a241a6a01a735886ce63cbabcdf47b",
        ] {
            assert!(check(bad).is_err(), "{bad:?} passed");
        }
        assert!(check(&"a".repeat(65)).is_err());
    }
}
