use tracing::field::{Field, Visit};

/// One recorded field value. Numbers and booleans stay typed, so JSON lines
/// carry them unquoted; everything else (`%display`, `?debug`, errors) is
/// recorded as its text.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Str(String),
    I64(i64),
    U64(u64),
    F64(f64),
    Bool(bool),
}

/// The fields of one event or span, in the order they were first recorded;
/// the `message` field apart.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    pub message: Option<String>,
    pub fields: Vec<(&'static str, Value)>,
}

impl Fields {
    /// Records `name`: a field recorded again (a span's `record`) keeps its
    /// place and takes the new value. A `message` that is not text is dropped.
    pub fn set(&mut self, name: &'static str, v: Value) {
        if name == "message" {
            if let Value::Str(s) = v {
                self.message = Some(s);
            }
            return;
        }
        if let Some(slot) = self.fields.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = v;
        } else {
            self.fields.push((name, v));
        }
    }

    /// Drops the fields with a dotted name (`otel.name`, `http.route`): span
    /// attributes for a trace backend, not log fields.
    pub fn drop_dotted(&mut self) {
        self.fields.retain(|(k, _)| !k.contains('.'));
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.set(field.name(), Value::Str(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.set(field.name(), Value::Str(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.set(field.name(), Value::I64(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.set(field.name(), Value::U64(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.set(field.name(), Value::F64(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.set(field.name(), Value::Bool(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.set(field.name(), Value::Str(value.to_string()));
    }
}
