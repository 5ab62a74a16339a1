// hiredis 0.14 (Debian libhiredis-dev): the Redis module uses only the RESP reader and command formatter.
#include <hiredis/hiredis.h>
