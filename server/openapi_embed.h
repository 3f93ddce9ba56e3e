/*
 * openapi_embed.h - openapi.yaml compiled into the program (server/openapi_embed.c), so that
 * GET /openapi.yaml always describes the code that answers it and needs no file at run time.
 * The bytes are [cloob_openapi_yaml, cloob_openapi_yaml_end), followed by a NUL; read-only data.
 */
#ifndef CLOOB_OPENAPI_EMBED_H
#define CLOOB_OPENAPI_EMBED_H

#include <stddef.h>

extern const char cloob_openapi_yaml[];
extern const char cloob_openapi_yaml_end[];

static inline size_t cloob_openapi_yaml_len(void) {
    return (size_t)(cloob_openapi_yaml_end - cloob_openapi_yaml);
}

#endif
