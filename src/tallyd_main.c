/* tallyd: placeholder entry until the replica shell lands (issue 3). */
#include <stdio.h>

int main(void)
{
    fprintf(stderr, "tallyd: the replica is not built yet\n");
    return 1;
}
