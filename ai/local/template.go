package local

import "strings"

// chatTemplate formats chat messages into a prompt. GGUF files carry their
// template as Jinja source (tokenizer.chat_template); rather than run
// Jinja, the common families are recognised by their markers and written
// out here. Role markers go in special segments (so their control tokens
// are recognised) and message content in plain ones (so users cannot
// forge them).
type chatTemplate int

const (
	tmplPlain  chatTemplate = iota // "role: content" lines, for models without a template
	tmplChatML                     // <|im_start|>role ... <|im_end|> (Qwen, SmolLM, many fine-tunes)
	tmplLlama3                     // <|start_header_id|>role<|end_header_id|> ... <|eot_id|>
	tmplZephyr                     // <|user|> ... </s> (TinyLlama chat, Zephyr)
	tmplLlama2                     // [INST] ... [/INST] (Llama 2 chat, Mistral instruct)
)

func detectTemplate(src string) chatTemplate {
	switch {
	case strings.Contains(src, "<|im_start|>"):
		return tmplChatML
	case strings.Contains(src, "<|start_header_id|>"):
		return tmplLlama3
	case strings.Contains(src, "<|user|>"):
		return tmplZephyr
	case strings.Contains(src, "[INST]"):
		return tmplLlama2
	}
	return tmplPlain
}

func (t chatTemplate) render(msgs []Message) []segment {
	var segs []segment
	sp := func(s string) { segs = append(segs, segment{text: s, special: true}) }
	txt := func(s string) { segs = append(segs, segment{text: s}) }
	role := func(r string) string {
		if r == "developer" {
			return "system"
		}
		return r
	}
	switch t {
	case tmplChatML:
		for _, m := range msgs {
			sp("<|im_start|>" + role(m.Role) + "\n")
			txt(m.Content)
			sp("<|im_end|>\n")
		}
		sp("<|im_start|>assistant\n")
	case tmplLlama3:
		for _, m := range msgs {
			sp("<|start_header_id|>" + role(m.Role) + "<|end_header_id|>\n\n")
			txt(strings.TrimSpace(m.Content))
			sp("<|eot_id|>")
		}
		sp("<|start_header_id|>assistant<|end_header_id|>\n\n")
	case tmplZephyr:
		for _, m := range msgs {
			sp("<|" + role(m.Role) + "|>\n")
			txt(m.Content)
			sp("</s>\n")
		}
		sp("<|assistant|>\n")
	case tmplLlama2:
		system := ""
		for i, m := range msgs {
			switch role(m.Role) {
			case "system":
				system += m.Content + "\n\n"
			case "user", "tool":
				if i > 0 && len(segs) > 0 {
					sp("<s>")
				}
				sp("[INST] ")
				txt(system + strings.TrimSpace(m.Content))
				sp(" [/INST]")
				system = ""
			case "assistant":
				txt(" " + strings.TrimSpace(m.Content) + " ")
				sp("</s>")
			}
		}
	default:
		for _, m := range msgs {
			sp(role(m.Role) + ": ")
			txt(m.Content)
			sp("\n")
		}
		sp("assistant:")
	}
	return segs
}
