/*
 * openapi_embed.c - embeds openapi.yaml (repo root) with the assembler's .incbin. The Makefile
 * compiles this from the repository root and lists openapi.yaml as a prerequisite, so an edited
 * contract rebuilds the program.
 */
#include "openapi_embed.h"

__asm__(".section .rodata\n"
        ".global cloob_openapi_yaml\n"
        ".type cloob_openapi_yaml, @object\n"
        "cloob_openapi_yaml:\n"
        ".incbin \"openapi.yaml\"\n"
        ".global cloob_openapi_yaml_end\n"
        ".type cloob_openapi_yaml_end, @object\n"
        "cloob_openapi_yaml_end:\n"
        ".byte 0\n"
        ".previous\n");
