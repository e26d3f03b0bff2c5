//! Chat templates: the model's own `tokenizer.chat_template` (Jinja) rendered with minijinja,
//! with the helpers Hugging Face templates use (`raise_exception`, `strftime_now`, Python-style
//! string methods).

use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

use super::Error;

/// One chat message. Its `Debug` shows the role and the length, never the text.
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Message {
    /// "system", "user" or "assistant".
    pub role: String,
    /// Text.
    pub content: String,
}

impl Message {
    /// A message with this role.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("role", &self.role)
            .field(
                "content",
                &format_args!("<{} bytes redacted>", self.content.len()),
            )
            .finish()
    }
}

/// A compiled chat template.
pub struct ChatTemplate {
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate").finish_non_exhaustive()
    }
}

fn raise_exception(msg: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
}

/// `strftime_now(fmt)`: the current UTC time, supporting %Y %m %d %e %H %M %S %B %b %A %a %j %%.
fn strftime_now(fmt: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    strftime(&fmt, secs)
}

pub(crate) fn strftime(fmt: &str, secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let month = MONTHS.get((m - 1) as usize).copied().unwrap_or("");
    let weekday = DAYS.get((days % 7) as usize).copied().unwrap_or("");
    let jan1 = {
        let (yy, mm) = (y - 1, 10i64); // days from civil(y,1,1)
        let era = yy.div_euclid(400);
        let yoe = yy - era * 400;
        let doy = (153 * mm + 2) / 5;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    };
    let mut out = String::new();
    let mut it = fmt.chars();
    while let Some(c) = it.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('Y') => out.push_str(&y.to_string()),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('e') => out.push_str(&format!("{d:>2}")),
            Some('H') => out.push_str(&format!("{:02}", rem / 3600)),
            Some('M') => out.push_str(&format!("{:02}", rem % 3600 / 60)),
            Some('S') => out.push_str(&format!("{:02}", rem % 60)),
            Some('B') => out.push_str(month),
            Some('b') => out.push_str(month.get(..3).unwrap_or(month)),
            Some('A') => out.push_str(weekday),
            Some('a') => out.push_str(weekday.get(..3).unwrap_or(weekday)),
            Some('j') => out.push_str(&format!("{:03}", days as i64 - jan1 + 1)),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

impl ChatTemplate {
    /// Compiles a template source.
    pub fn new(source: &str) -> Result<Self, Error> {
        let mut env = Environment::new();
        // As Hugging Face's apply_chat_template (and llama.cpp's Jinja formatter) configure Jinja.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .lstrip_blocks(true)
            .build()
            .map_err(|e| Error::Template(e.to_string()))?;
        env.set_syntax(syntax);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned("chat", source.to_owned())
            .map_err(|e| Error::Template(e.to_string()))?;
        Ok(Self { env })
    }

    /// Renders a conversation, ending with the assistant prompt when `add_generation_prompt`.
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        bos: &str,
        eos: &str,
    ) -> Result<String, Error> {
        let t = self
            .env
            .get_template("chat")
            .map_err(|e| Error::Template(e.to_string()))?;
        t.render(minijinja::context! {
            messages => Value::from(minijinja::value::Serde(messages)),
            add_generation_prompt => add_generation_prompt,
            bos_token => bos,
            eos_token => eos,
        })
        .map_err(|e| Error::Template(e.to_string()))
    }
}

/// A plain fallback when the model has no template: ChatML.
pub(super) const CHATML: &str = "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}";

/// Gemma's turn format (`<start_of_turn>user ... <end_of_turn>`), for Gemma GGUFs without a
/// template (the Gemma 3 270M file of issue 19 has none); build/gen-greedy-reference.py renders
/// the same file for llama.cpp.
pub(super) const GEMMA: &str = include_str!("templates/gemma.jinja");

/// The template of a model whose GGUF has none: its family's (`general.architecture`), else
/// ChatML.
pub(super) fn default_template(architecture: &str) -> &'static str {
    if architecture.starts_with("gemma") {
        GEMMA
    } else {
        CHATML
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_never_debug_prints_its_text() {
        let m = Message::new("user", "the classified question");
        let d = format!("{m:?}");
        assert!(d.contains("user") && !d.contains("classified"), "{d}");
    }

    #[test]
    fn strftime_formats_known_dates() {
        assert_eq!(strftime("%Y-%m-%d %H:%M:%S", 0), "1970-01-01 00:00:00");
        assert_eq!(
            strftime("%d %B %Y, %A", 1_780_000_000),
            "28 May 2026, Thursday"
        );
        assert_eq!(strftime("%b %e %j %%", 1_709_251_200), "Mar  1 061 %");
    }

    /// Gemma's turn format: the system message at the head of the first user turn, the
    /// assistant's turns as the model's, texts trimmed, the model's turn opened.
    #[test]
    fn gemma_s_default_template_renders_its_turns() {
        let t = ChatTemplate::new(default_template("gemma3")).unwrap();
        let chat = [
            Message::new("system", "Be brief."),
            Message::new("user", " Hi \n"),
            Message::new("assistant", "Hello."),
            Message::new("user", "Bye"),
        ];
        assert_eq!(
            t.render(&chat, true, "<bos>", "<eos>").unwrap(),
            "<bos><start_of_turn>user\nBe brief.\n\nHi<end_of_turn>\n\
             <start_of_turn>model\nHello.<end_of_turn>\n\
             <start_of_turn>user\nBye<end_of_turn>\n<start_of_turn>model\n"
        );
        assert_eq!(
            t.render(&chat[1..2], false, "<bos>", "").unwrap(),
            "<bos><start_of_turn>user\nHi<end_of_turn>\n"
        );
        assert_eq!(default_template("llama"), CHATML);
    }

    #[test]
    fn helpers_and_python_methods_work() {
        let t = ChatTemplate::new(
            "{% if messages[0].role == 'bad' %}{{ raise_exception('no system') }}{% endif %}{{ messages[0].content.strip().upper() }}",
        )
        .unwrap();
        assert_eq!(
            t.render(&[Message::new("user", "  hi ")], true, "", "")
                .unwrap(),
            "HI"
        );
        let err = t
            .render(&[Message::new("bad", "x")], true, "", "")
            .unwrap_err();
        assert!(err.to_string().contains("no system"), "{err}");
    }
}
