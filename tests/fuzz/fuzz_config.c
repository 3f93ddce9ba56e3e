/*
 * fuzz_config.c - libFuzzer target for the config file parser and the flag parser in
 * server/config.c. The input is used twice: as config file text (config_parse_text), and split
 * at NUL bytes into argv for config_load (skipping inputs that would name files to read).
 * Every accepted config must render as JSON; nothing may crash, leak or overrun.
 */
#include "config.c"
#include "log.c"

#include <assert.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[512];
    server_config c;
    config_defaults(&c);
    if (config_parse_text(&c, (const char *)data, size, "fuzz.conf", err, sizeof err) == 0) {
        char *j = config_to_json(&c);
        assert(j != NULL);
        free(j);
        (void)config_validate(&c, err, sizeof err);
        (void)config_api_key_ok(&c, (const char *)data, size > 64 ? 64 : size);
        (void)config_cors_origin_allowed(&c, (const char *)data, size > 64 ? 64 : size);
    } else {
        assert(err[0] != '\0');
    }
    config_free(&c);

    /* argv from NUL-separated pieces; refuse anything that could open a file */
    if (size > 4096 || memmem(data, size, "config", 6) || memmem(data, size, "file", 4))
        return 0;
    char *copy = malloc(size + 1);
    memcpy(copy, data, size);
    copy[size] = '\0';
    char *argv[64];
    int argc = 0;
    argv[argc++] = "cloob-server";
    for (size_t i = 0; i <= size && argc < 63;) {
        argv[argc++] = copy + i;
        i += strlen(copy + i) + 1;
    }
    argv[argc] = NULL;
    static char *const no_env[] = {NULL};
    FILE *devnull = fopen("/dev/null", "w");
    config_defaults(&c);
    config_result r = config_load(&c, argc, argv, no_env, devnull, err, sizeof err);
    if (r == CONFIG_OK) {
        char *j = config_to_json(&c);
        assert(j != NULL);
        free(j);
    }
    config_free(&c);
    fclose(devnull);
    free(copy);
    return 0;
}
