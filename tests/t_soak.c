/* t_soak: the soak (tests/soak.c) as `make test` runs it: SOAK_DEFAULT_S
 * seconds of the same mixed load on loopback against build/tokenspeed serve,
 * with the same checks (KV blocks, requests and connection slots identical
 * before and after, one terminal frame per request, RSS flat from ready,
 * exit 0 on SIGTERM). `make soak` runs it longer (SOAK_S). */
#define SOAK_DEFAULT_S 30
#define SOAK_NAME      "t_soak.c"
#include "soak.c"
