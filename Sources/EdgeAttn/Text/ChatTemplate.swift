/// ChatML, the template of SmolLM2-Instruct (and of many small instruct models):
///   <|im_start|>{role}\n{content}<|im_end|>\n ... then <|im_start|>assistant\n to ask for a reply.
/// No system message is invented: pass one as the first message if the model wants it.
public enum ChatTemplate {
    public static func chatML(_ messages: [(role: String, content: String)], addAssistant: Bool) -> String {
        var s = ""
        for m in messages {
            s += "<|im_start|>" + m.role + "\n" + m.content + "<|im_end|>\n"
        }
        if addAssistant { s += "<|im_start|>assistant\n" }
        return s
    }
}
