/// Chat prompt formats. The model's vocabulary decides which one applies (the GGUF's Jinja template
/// is not interpreted):
/// - ChatML (SmolLM2-Instruct and many small instruct models):
///   `<|im_start|>{role}\n{content}<|im_end|>\n` ..., then `<|im_start|>assistant\n` to ask for a reply.
/// - Gemma (vocabulary has `<start_of_turn>`): `<start_of_turn>{user|model}\n{content}<end_of_turn>\n`,
///   then `<start_of_turn>model\n`; a system message is prepended to the first user turn, as
///   Gemma's own template does. BOS comes from tokenization, not from the template.
/// No system message is invented.
public enum ChatTemplate {
    public enum Style { case chatML, gemma }

    public static func style(for t: Tokenizer) -> Style {
        t.id(of: "<start_of_turn>") != nil && t.id(of: "<end_of_turn>") != nil ? .gemma : .chatML
    }

    public static func format(_ messages: [(role: String, content: String)], addAssistant: Bool,
                              style: Style) -> String {
        switch style {
        case .chatML: return chatML(messages, addAssistant: addAssistant)
        case .gemma: return gemma(messages, addAssistant: addAssistant)
        }
    }

    public static func chatML(_ messages: [(role: String, content: String)], addAssistant: Bool) -> String {
        var s = ""
        for m in messages {
            s += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n"
        }
        if addAssistant { s += "<|im_start|>assistant\n" }
        return s
    }

    public static func gemma(_ messages: [(role: String, content: String)], addAssistant: Bool) -> String {
        var s = ""
        var system = ""
        for m in messages {
            if m.role == "system" {
                system += m.content + "\n\n"
                continue
            }
            let role = m.role == "assistant" ? "model" : m.role
            s += "<start_of_turn>" + role + "\n" + (role == "user" ? system : "") + m.content + "<end_of_turn>\n"
            if role == "user" { system = "" }
        }
        if addAssistant { s += "<start_of_turn>model\n" }
        return s
    }
}
