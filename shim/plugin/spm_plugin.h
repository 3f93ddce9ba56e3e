/*
 * spm_plugin.h - the C table of functions that libcloob_spm.so (shim/plugin/spm_plugin.cc, linked
 * against Debian's libsentencepiece) exports to the shim's tokenizer.
 *
 * Why a plugin: Debian's libsentencepiece.so.0 carries its own copy of protobuf-lite 3.14 and
 * exports those symbols, while libtorch_cpu needs the system libprotobuf.so.32 (3.21). Linked into
 * one program, whichever is first in the global symbol scope wins for both: with sentencepiece
 * first the process dies in libprotobuf's static initialisers (SIGSEGV before main), with
 * libprotobuf first sentencepiece's GOOGLE_PROTOBUF_VERIFY_VERSION aborts. The shim therefore
 * dlopen()s this plugin with RTLD_LOCAL | RTLD_DEEPBIND after libtorch is loaded: sentencepiece's
 * references then bind to its own protobuf copy first and nothing of it enters the global scope.
 *
 * Only C types cross this table; no exception escapes it. Handles are owned by the caller and
 * released with free_model. Thread safety: encode / piece_to_id are const on a loaded model and
 * may be called concurrently (SentencePieceProcessor::Encode is const).
 */
#ifndef CLOOB_SPM_PLUGIN_H
#define CLOOB_SPM_PLUGIN_H

#include <stddef.h>

#define CLOOB_SPM_PLUGIN_ABI 1
#define CLOOB_SPM_PLUGIN_SYMBOL "cloob_spm_plugin"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct cloob_spm_api {
    int abi; /* CLOOB_SPM_PLUGIN_ABI */
    /* Loads a serialized ModelProto (the bytes of a .model file). NULL + message on failure. */
    void *(*load)(const char *proto, size_t len, char *err, size_t errlen);
    void (*free_model)(void *model);
    /* SentencePieceProcessor::Encode(text, &ids): writes up to cap ids into out and returns the
     * full count (call again with a larger buffer when it exceeds cap), or -1 with a message. */
    long (*encode)(const void *model, const char *text, size_t len, int *out, size_t cap,
                   char *err, size_t errlen);
    int (*piece_to_id)(const void *model, const char *piece, size_t len);
    int (*unk_id)(const void *model);
    int (*vocab_size)(const void *model);
    const char *(*version)(void); /* "sentencepiece (Debian libsentencepiece0)" */
} cloob_spm_api;

typedef const cloob_spm_api *(*cloob_spm_plugin_fn)(void);

#ifdef __cplusplus
}
#endif

#endif
