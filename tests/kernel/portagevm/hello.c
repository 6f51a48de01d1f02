/* test-ima/hellolib: an executable that needs its package's shared library. */
#include <stdio.h>

const char *hello_greeting(void);

int main(void)
{
	printf("%s\n", hello_greeting());
	return 0;
}
