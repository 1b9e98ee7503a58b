//! Admission of custom resources as kube-apiserver does it, from the CRD the server was given:
//! unknown fields pruned (with a `Warning`) or refused (`fieldValidation=Strict`), nulls of
//! non-nullable fields pruned, defaults applied, then the structural OpenAPI v3 schema (type,
//! enum, pattern, lengths, bounds, required, nullable, items) and the CEL rules of
//! `x-kubernetes-validations` (`self`, `oldSelf` for transition rules, `message`,
//! `messageExpression`, `reason`, `fieldPath`). Answers carry the real server's reasons,
//! messages and causes (see the `validation` scenario of the recorded transcripts).

use std::collections::HashMap;

use serde_json::{Map, Value, json};

/// One entry of `details.causes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    pub reason: &'static str,
    pub message: String,
    pub field: String,
}

/// Why an object was not admitted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rejection {
    /// `fieldValidation=Strict` and these fields are unknown: 400 BadRequest.
    UnknownFields(Vec<String>),
    /// Schema or CEL violations: 422 Invalid.
    Invalid(Vec<Cause>),
}

/// Which part of the object a write may change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The main resource: everything but `status` (and metadata, validated elsewhere).
    Main,
    /// The `/status` subresource: `status` only; spec rules do not run.
    Status,
}

/// How unknown fields are treated (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Refuse the request.
    Strict,
    /// Prune them and say so in a `Warning` header (the default).
    #[default]
    Warn,
    /// Prune them silently.
    Ignore,
}

impl FieldValidation {
    pub fn parse(value: Option<&str>) -> Self {
        match value {
            Some("Strict") => Self::Strict,
            Some("Ignore") => Self::Ignore,
            _ => Self::Warn,
        }
    }
}

/// The reasons whose presence stops CEL from running (as `hasBlockingErr` in apiextensions;
/// a string over `maxLength` or a list over `maxItems` blocks too, as the real server showed).
const BLOCKING: [&str; 5] = [
    "FieldValueNotSupported",
    "FieldValueRequired",
    "FieldValueTypeInvalid",
    "FieldValueTooLong",
    "FieldValueTooMany",
];

const NOT_CHECKED: &str = "Invalid value: null: some validation rules were not checked because the object was invalid; correct the existing errors to complete validation";

/// A compiled `x-kubernetes-validations` entry.
struct Rule {
    source: String,
    program: cel::Program,
    message: Option<String>,
    message_expression: Option<cel::Program>,
    reason: Option<String>,
    field_path: Option<String>,
    /// Refers to `oldSelf`: evaluated only on updates where the old value exists.
    transition: bool,
}

/// The admission of one served version of a CRD.
pub struct Validator {
    schema: Value,
    /// Compiled rules by schema location (`spec`, `spec.bucket`, `status.conditions[*]`).
    rules: HashMap<String, Vec<Rule>>,
}

impl Validator {
    /// Compiles every rule of the version's schema; a rule that does not compile is an error,
    /// as it is when the real server is given the CRD.
    pub fn new(version: &Value) -> Result<Self, String> {
        let schema = version
            .pointer("/schema/openAPIV3Schema")
            .cloned()
            .unwrap_or_else(|| json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}));
        let mut rules = HashMap::new();
        compile_rules(&schema, "", &mut rules)?;
        Ok(Self { schema, rules })
    }

    /// The first value of a server-side apply body whose JSON type the schema cannot hold, in
    /// structured-merge-diff's words (the real server answers such an apply 500 before
    /// admission: "failed to create typed patch object"): a field the schema does not declare,
    /// or a non-number where it wants a number (other type mismatches are left to admission).
    pub fn apply_type_error(&self, applied: &Value) -> Option<String> {
        fn walk(value: &Value, schema: &Value, path: &str) -> Option<String> {
            match (schema["type"].as_str(), value) {
                (Some("integer" | "number"), Value::String(_) | Value::Bool(_)) => {
                    let got = if value.is_string() { "string" } else { "bool" };
                    Some(format!("{path}: expected numeric (int or float), got {got}"))
                }
                (_, Value::Object(map)) => map.iter().find_map(|(key, child)| {
                    let at = format!("{path}.{key}");
                    match schema["properties"]
                        .get(key)
                        .or_else(|| schema.get("additionalProperties"))
                    {
                        Some(child_schema) if child_schema.is_object() => walk(child, child_schema, &at),
                        _ if preserves_unknown(schema) || schema.get("properties").is_none() => None,
                        _ => Some(format!("{at}: field not declared in schema")),
                    }
                }),
                (_, Value::Array(items)) => {
                    let item_schema = schema.get("items")?;
                    items
                        .iter()
                        .enumerate()
                        .find_map(|(i, item)| walk(item, item_schema, &format!("{path}[{i}]")))
                }
                _ => None,
            }
        }
        let map = applied.as_object()?;
        map.iter()
            .filter(|(key, _)| !["apiVersion", "kind", "metadata"].contains(&key.as_str()))
            .find_map(|(key, child)| walk(child, self.schema["properties"].get(key)?, &format!(".{key}")))
    }

    /// Admits `object` (pruned and defaulted in place) or says why not. `old` is the stored
    /// object on updates. Returns the warnings to send.
    pub fn admit(
        &self,
        object: &mut Value,
        old: Option<&Value>,
        part: Part,
        unknown: FieldValidation,
    ) -> Result<Vec<String>, Rejection> {
        let parts: Vec<String> = match part {
            Part::Status => vec!["status".into()],
            Part::Main => self.schema["properties"]
                .as_object()
                .map(|p| p.keys().filter(|k| *k != "status").cloned().collect())
                .unwrap_or_default(),
        };
        // Pruning at the root: the type's own fields are not the schema's business, and each part
        // of the object is pruned only by the write that may change it.
        let mut unknown_fields = Vec::new();
        if let Some(map) = object.as_object_mut() {
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let mine = match part {
                    Part::Main => !["apiVersion", "kind", "metadata", "status"].contains(&key.as_str()),
                    Part::Status => key == "status",
                };
                if !mine {
                    continue;
                }
                match self.schema["properties"].get(&key) {
                    Some(child_schema) => {
                        prune(
                            map.get_mut(&key).expect("present"),
                            child_schema,
                            &key,
                            &mut unknown_fields,
                        );
                    }
                    None if preserves_unknown(&self.schema) => {}
                    None => {
                        map.remove(&key);
                        unknown_fields.push(key);
                    }
                }
            }
        }
        if !unknown_fields.is_empty() && unknown == FieldValidation::Strict {
            return Err(Rejection::UnknownFields(unknown_fields));
        }
        let warnings = match unknown {
            FieldValidation::Warn => unknown_fields
                .iter()
                .map(|f| format!("unknown field \"{f}\""))
                .collect(),
            _ => Vec::new(),
        };
        let mut causes = Vec::new();
        for name in &parts {
            let schema = &self.schema["properties"][name];
            if let Some(map) = object.as_object_mut() {
                apply_defaults_to(map, name, schema);
            }
            if let Some(value) = object.get(name.as_str()) {
                let first = causes.len();
                validate(value, schema, name, &mut causes);
                if part == Part::Status {
                    // The status subresource validates `status` with its own schema: the
                    // messages name fields relative to it (the causes' fields do not).
                    static RELATIVE: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
                        regex::Regex::new(r"\bstatus\.(\S+) in body").expect("a valid pattern")
                    });
                    for cause in &mut causes[first..] {
                        cause.message = RELATIVE.replace_all(&cause.message, "$1 in body").into_owned();
                    }
                }
            } else if self.schema["required"]
                .as_array()
                .is_some_and(|r| r.iter().any(|v| v == name.as_str()))
            {
                causes.push(Cause {
                    reason: "FieldValueRequired",
                    message: "Required value".into(),
                    field: name.clone(),
                });
            }
        }
        // As apiextensions: the blocking check belongs to the CEL validator, which exists only
        // when the schema has rules at all.
        if !self.rules.is_empty() && causes.iter().any(|c| BLOCKING.contains(&c.reason)) {
            causes.push(Cause {
                reason: "FieldValueInvalid",
                message: NOT_CHECKED.into(),
                field: "<nil>".into(),
            });
            return Err(Rejection::Invalid(causes));
        }
        for name in &parts {
            if let Some(value) = object.get(name.as_str()) {
                let old_value = old.and_then(|o| o.get(name.as_str()));
                self.check_rules(
                    value,
                    old_value,
                    &self.schema["properties"][name],
                    name,
                    name,
                    &mut causes,
                );
            }
        }
        if causes.is_empty() {
            Ok(warnings)
        } else {
            Err(Rejection::Invalid(causes))
        }
    }

    /// Runs the CEL rules at this node and below. `location` is the schema location (rules'
    /// key), `path` the field path for messages.
    fn check_rules(
        &self,
        value: &Value,
        old: Option<&Value>,
        schema: &Value,
        location: &str,
        path: &str,
        causes: &mut Vec<Cause>,
    ) {
        if value.is_null() {
            return;
        }
        for rule in self.rules.get(location).into_iter().flatten() {
            if rule.transition && old.is_none_or(Value::is_null) {
                continue;
            }
            let mut context = cel::Context::default();
            context.add_variable_from_value("self", to_cel(value));
            if let Some(old) = old {
                context.add_variable_from_value("oldSelf", to_cel(old));
            }
            let failure = match rule.program.execute(&context) {
                Ok(cel::Value::Bool(true)) => None,
                Ok(cel::Value::Bool(false)) => Some(rule_message(rule, &context)),
                Ok(other) => Some(format!(
                    "rule {:?} did not evaluate to a bool: {other:?}",
                    rule.source
                )),
                Err(error) => {
                    // As apiextensions: the schema type as the value, then the error and the rule.
                    let field = match &rule.field_path {
                        Some(relative) => format!("{path}{relative}"),
                        None => path.to_owned(),
                    };
                    let kind = schema["type"].as_str().unwrap_or("object");
                    let message = format!(
                        "Invalid value: \"{kind}\": {} evaluating rule: {}",
                        evaluation_error(&error),
                        rule.message.as_deref().unwrap_or(&rule.source).trim()
                    );
                    causes.push(Cause {
                        reason: "FieldValueInvalid",
                        message,
                        field,
                    });
                    None
                }
            };
            if let Some(message) = failure {
                let field = match &rule.field_path {
                    Some(relative) => format!("{path}{relative}"),
                    None => path.to_owned(),
                };
                causes.push(cel_cause(rule.reason.as_deref(), field, value, message));
            }
        }
        if let (Some(map), Some(properties)) = (value.as_object(), schema["properties"].as_object()) {
            for (key, child_schema) in properties {
                if let Some(child) = map.get(key) {
                    let old_child = old.and_then(|o| o.get(key));
                    self.check_rules(
                        child,
                        old_child,
                        child_schema,
                        &format!("{location}.{key}"),
                        &format!("{path}.{key}"),
                        causes,
                    );
                }
            }
        }
        if let (Some(items), Some(item_schema)) = (value.as_array(), schema.get("items")) {
            for (i, item) in items.iter().enumerate() {
                // Transition rules on list items need item correlation (map lists); none here.
                self.check_rules(
                    item,
                    None,
                    item_schema,
                    &format!("{location}[*]"),
                    &format!("{path}[{i}]"),
                    causes,
                );
            }
        }
    }
}

fn compile_rules(
    schema: &Value,
    location: &str,
    rules: &mut HashMap<String, Vec<Rule>>,
) -> Result<(), String> {
    if let Some(validations) = schema["x-kubernetes-validations"].as_array() {
        for (i, validation) in validations.iter().enumerate() {
            let at = format!("{}.x-kubernetes-validations[{i}]", crd_field(location));
            let source = validation["rule"]
                .as_str()
                .ok_or_else(|| format!("{at}.rule: Required value"))?
                .to_owned();
            let program = cel::Program::compile(&source).map_err(|e| {
                format!(
                    "{at}.rule: Invalid value: {}: compilation failed: {e}",
                    go_rule(validation)
                )
            })?;
            let message_expression = match validation["messageExpression"].as_str() {
                Some(expression) => Some(cel::Program::compile(expression).map_err(|e| {
                    format!(
                        "{at}.messageExpression: Invalid value: {}: messageExpression compilation failed: {e}",
                        go_rule(validation)
                    )
                })?),
                None => None,
            };
            let transition = program.references().has_variable("oldSelf");
            rules
                .entry(location.trim_start_matches('.').to_owned())
                .or_default()
                .push(Rule {
                    source,
                    program,
                    message: validation["message"].as_str().map(str::to_owned),
                    message_expression,
                    reason: validation["reason"].as_str().map(str::to_owned),
                    field_path: validation["fieldPath"].as_str().map(str::to_owned),
                    transition,
                });
        }
    }
    if let Some(properties) = schema["properties"].as_object() {
        for (key, child) in properties {
            compile_rules(child, &format!("{location}.{key}"), rules)?;
        }
    }
    if let Some(items) = schema.get("items") {
        compile_rules(items, &format!("{location}[*]"), rules)?;
    }
    if let Some(additional) = schema.get("additionalProperties").filter(|a| a.is_object()) {
        compile_rules(additional, &format!("{location}[*]"), rules)?;
    }
    Ok(())
}

/// A schema location (`.spec.tags[*]`) as the real server names it in a CRD's field errors
/// (`spec.validation.openAPIV3Schema.properties[spec].properties[tags].items`).
fn crd_field(location: &str) -> String {
    let mut field = "spec.validation.openAPIV3Schema".to_owned();
    for segment in location.split('.').filter(|s| !s.is_empty()) {
        let (name, items) = match segment.strip_suffix("[*]") {
            Some(name) => (name, true),
            None => (segment, false),
        };
        field.push_str(&format!(".properties[{name}]"));
        if items {
            field.push_str(".items");
        }
    }
    field
}

/// A validation rule as the real server prints it in a field error (Go's ValidationRule as
/// JSON, fields in declaration order).
fn go_rule(validation: &Value) -> String {
    let text = |f: &str| json!(validation[f].as_str().unwrap_or(""));
    let or_null = |f: &str| validation.get(f).cloned().unwrap_or(Value::Null);
    format!(
        "{{\"Rule\":{},\"Message\":{},\"MessageExpression\":{},\"Reason\":{},\"FieldPath\":{},\"OptionalOldSelf\":{}}}",
        text("rule"),
        text("message"),
        text("messageExpression"),
        or_null("reason"),
        text("fieldPath"),
        or_null("optionalOldSelf")
    )
}

fn rule_message(rule: &Rule, context: &cel::Context) -> String {
    if let Some(expression) = &rule.message_expression
        && let Ok(cel::Value::String(text)) = expression.execute(context)
        && !text.trim().is_empty()
    {
        return text.to_string();
    }
    rule.message
        .clone()
        .unwrap_or_else(|| format!("failed rule: {}", rule.source))
}

/// A failed CEL rule as the server words it: scalars show their value, objects and lists not.
/// A CEL evaluation error in cel-go's words where the test server's CEL library words it
/// differently (the conversions the project's rules use).
fn evaluation_error(error: &cel::ExecutionError) -> String {
    let text = error.to_string();
    if text.contains("'duration'") {
        "type conversion error from 'string' to 'google.protobuf.Duration'".to_owned()
    } else if text.contains("'timestamp'") {
        "type conversion error from 'string' to 'google.protobuf.Timestamp'".to_owned()
    } else {
        text
    }
}

fn cel_cause(reason: Option<&str>, field: String, value: &Value, message: String) -> Cause {
    match reason {
        Some("FieldValueForbidden") => Cause {
            reason: "FieldValueForbidden",
            message: format!("Forbidden: {message}"),
            field,
        },
        Some("FieldValueRequired") => Cause {
            reason: "FieldValueRequired",
            message: format!("Required value: {message}"),
            field,
        },
        Some("FieldValueDuplicate") => Cause {
            reason: "FieldValueDuplicate",
            message: format!("Duplicate value: {}", render(value)),
            field,
        },
        _ => Cause {
            reason: "FieldValueInvalid",
            message: match value {
                Value::Object(_) | Value::Array(_) => format!("Invalid value: {message}"),
                scalar => format!("Invalid value: {}: {message}", render(scalar)),
            },
            field,
        },
    }
}

/// A value as Go's `%q`/`%v` print it in field errors.
fn render(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        other => other.to_string(),
    }
}

fn to_cel(value: &Value) -> cel::Value {
    match value {
        Value::Null => cel::Value::Null,
        Value::Bool(b) => cel::Value::Bool(*b),
        Value::Number(n) => match (n.as_i64(), n.as_u64(), n.as_f64()) {
            (Some(i), _, _) => cel::Value::Int(i),
            (None, Some(u), _) => cel::Value::UInt(u),
            (_, _, f) => cel::Value::Float(f.unwrap_or(f64::NAN)),
        },
        Value::String(s) => cel::Value::from(s.as_str()),
        Value::Array(items) => cel::Value::from(items.iter().map(to_cel).collect::<Vec<_>>()),
        Value::Object(map) => {
            let map: HashMap<String, cel::Value> = map.iter().map(|(k, v)| (k.clone(), to_cel(v))).collect();
            cel::Value::from(map)
        }
    }
}

fn preserves_unknown(schema: &Value) -> bool {
    schema["x-kubernetes-preserve-unknown-fields"] == true
}

/// Removes fields the schema does not know (recording their paths) and nulls of non-nullable
/// fields.
fn prune(value: &mut Value, schema: &Value, path: &str, unknown: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            let properties = schema["properties"].as_object();
            let additional = schema.get("additionalProperties").filter(|a| a.is_object());
            let keys: Vec<String> = map.keys().cloned().collect();
            for key in keys {
                let child_path = format!("{path}.{key}");
                let child_schema = properties.and_then(|p| p.get(&key)).or(additional);
                match child_schema {
                    Some(child_schema) => {
                        if map[&key].is_null() && child_schema["nullable"] != true {
                            map.remove(&key);
                            continue;
                        }
                        prune(
                            map.get_mut(&key).expect("present"),
                            child_schema,
                            &child_path,
                            unknown,
                        );
                    }
                    None if preserves_unknown(schema) => {}
                    None => {
                        map.remove(&key);
                        unknown.push(child_path);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    prune(item, item_schema, &format!("{path}[{i}]"), unknown);
                }
            }
        }
        _ => {}
    }
}

/// Applies `schema`'s default to `map[name]` when absent, then the defaults below it.
fn apply_defaults_to(map: &mut Map<String, Value>, name: &str, schema: &Value) {
    if !map.contains_key(name)
        && let Some(default) = schema.get("default")
    {
        map.insert(name.to_owned(), default.clone());
    }
    let Some(value) = map.get_mut(name) else { return };
    apply_defaults(value, schema);
}

fn apply_defaults(value: &mut Value, schema: &Value) {
    match value {
        Value::Object(map) => {
            if let Some(properties) = schema["properties"].as_object() {
                for (key, child_schema) in properties {
                    apply_defaults_to(map, key, child_schema);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for item in items {
                    apply_defaults(item, item_schema);
                }
            }
        }
        _ => {}
    }
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The structural schema checks at this node and below.
fn validate(value: &Value, schema: &Value, path: &str, causes: &mut Vec<Cause>) {
    let invalid = |message: String| Cause {
        reason: "FieldValueInvalid",
        message,
        field: path.to_owned(),
    };
    if value.is_null() {
        if schema["nullable"] != true {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: \"null\": {path} in body must be of type {}: \"null\"",
                    schema["type"].as_str().unwrap_or("object")
                ),
                field: path.to_owned(),
            });
        }
        return;
    }
    if let Some(wanted) = schema["type"].as_str() {
        let got = type_name(value);
        let fits = got == wanted || (wanted == "number" && got == "integer");
        if !fits {
            causes.push(Cause {
                reason: "FieldValueTypeInvalid",
                message: format!(
                    "Invalid value: \"{got}\": {path} in body must be of type {wanted}: \"{got}\""
                ),
                field: path.to_owned(),
            });
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array()
        && !allowed.contains(value)
    {
        let supported: Vec<String> = allowed
            .iter()
            .map(|v| {
                if v.is_null() {
                    "<nil>".into()
                } else {
                    v.to_string()
                }
            })
            .collect();
        causes.push(Cause {
            reason: "FieldValueNotSupported",
            message: format!(
                "Unsupported value: {}: supported values: {}",
                render(value),
                supported.join(", ")
            ),
            field: path.to_owned(),
        });
    }
    if let Some(text) = value.as_str() {
        // As go-openapi's string validator: maxLength, minLength, pattern, stopping at the
        // first that fails.
        if let Some(max) = schema["maxLength"].as_u64()
            && text.chars().count() as u64 > max
        {
            causes.push(Cause {
                reason: "FieldValueTooLong",
                message: format!("Too long: may not be more than {max} bytes"),
                field: path.to_owned(),
            });
        } else if let Some(min) = schema["minLength"].as_u64()
            && (text.chars().count() as u64) < min
        {
            causes.push(invalid(format!(
                "Invalid value: {}: {path} in body should be at least {min} chars long",
                render(value)
            )));
        } else if let Some(pattern) = schema["pattern"].as_str() {
            match regex::Regex::new(pattern) {
                Ok(regex) if regex.is_match(text) => {}
                Ok(_) => causes.push(invalid(format!(
                    "Invalid value: {}: {path} in body should match '{pattern}'",
                    render(value)
                ))),
                Err(error) => causes.push(invalid(format!("the schema's pattern does not compile: {error}"))),
            }
        }
    }
    if let Some(number) = value.as_f64() {
        if let Some(min) = schema["minimum"].as_f64()
            && number < min
        {
            causes.push(invalid(format!(
                "Invalid value: {}: {path} in body should be greater than or equal to {}",
                render(value),
                schema["minimum"]
            )));
        }
        if let Some(max) = schema["maximum"].as_f64()
            && number > max
        {
            causes.push(invalid(format!(
                "Invalid value: {}: {path} in body should be less than or equal to {}",
                render(value),
                schema["maximum"]
            )));
        }
    }
    if let Some(map) = value.as_object() {
        for required in schema["required"].as_array().into_iter().flatten() {
            if let Some(name) = required.as_str()
                && !map.contains_key(name)
            {
                causes.push(Cause {
                    reason: "FieldValueRequired",
                    message: "Required value".into(),
                    field: format!("{path}.{name}"),
                });
            }
        }
        let properties = schema["properties"].as_object();
        let additional = schema.get("additionalProperties").filter(|a| a.is_object());
        for (key, child) in map {
            if let Some(child_schema) = properties.and_then(|p| p.get(key)).or(additional) {
                validate(child, child_schema, &format!("{path}.{key}"), causes);
            }
        }
    }
    if let Some(items) = value.as_array() {
        if let Some(max) = schema["maxItems"].as_u64()
            && items.len() as u64 > max
        {
            causes.push(Cause {
                reason: "FieldValueTooMany",
                message: format!("Too many: {}: must have at most {max} items", items.len()),
                field: path.to_owned(),
            });
        }
        if let Some(min) = schema["minItems"].as_u64()
            && (items.len() as u64) < min
        {
            causes.push(invalid(format!(
                "Invalid value: {}: {path} in body should have at least {min} items",
                items.len()
            )));
        }
        if let Some(item_schema) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                validate(item, item_schema, &format!("{path}[{i}]"), causes);
            }
        }
    }
}
