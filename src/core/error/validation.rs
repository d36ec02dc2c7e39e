//! `validator`'s failures as one `VALIDATION_ERROR`: the first failing field by its dotted
//! path, every failure in `details.fields`, a readable message for each rule.

use serde_json::Value;

use super::{AppError, ErrorCode};

/// Turns `validator` failures into one `VALIDATION_ERROR` naming the first failing field
/// (dotted path), with every failure listed in `details.fields`.
impl From<validator::ValidationErrors> for AppError {
    fn from(errors: validator::ValidationErrors) -> Self {
        let mut failures = Vec::new();
        collect_validation_failures("", &errors, &mut failures);
        failures.sort_by(|a, b| a.0.cmp(&b.0));
        let Some((field, message)) = failures.first().cloned() else {
            return AppError::new(ErrorCode::ValidationError, "invalid request");
        };
        let fields: serde_json::Map<String, Value> = failures
            .into_iter()
            .map(|(field, message)| (field, Value::String(message)))
            .collect();
        AppError::validation(field.clone(), format!("{field}: {message}"))
            .with_details(serde_json::json!({ "fields": fields }))
    }
}

fn collect_validation_failures(
    prefix: &str,
    errors: &validator::ValidationErrors,
    out: &mut Vec<(String, String)>,
) {
    use validator::ValidationErrorsKind;
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                if let Some(first) = list.first() {
                    let message = first
                        .message
                        .as_ref()
                        .map(|message| message.to_string())
                        .unwrap_or_else(|| describe_validation_code(first));
                    out.push((path, message));
                }
            }
            ValidationErrorsKind::Struct(inner) => collect_validation_failures(&path, inner, out),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect_validation_failures(&format!("{path}[{index}]"), inner, out);
                }
            }
        }
    }
}

fn describe_validation_code(error: &validator::ValidationError) -> String {
    let param = |name: &str| error.params.get(name).map(|value| value.to_string());
    match error.code.as_ref() {
        "length" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("length must be between {min} and {max}"),
            (Some(min), None) => format!("length must be at least {min}"),
            (None, Some(max)) => format!("length must be at most {max}"),
            _ => "invalid length".into(),
        },
        "range" => match (param("min"), param("max")) {
            (Some(min), Some(max)) => format!("must be between {min} and {max}"),
            (Some(min), None) => format!("must be at least {min}"),
            (None, Some(max)) => format!("must be at most {max}"),
            _ => "out of range".into(),
        },
        "email" => "must be a valid email address".into(),
        "url" => "must be a valid URL".into(),
        "required" => "is required".into(),
        other => format!("is invalid ({other})"),
    }
}
