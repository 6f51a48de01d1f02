/* test-ima/binhello: built and signed on the host into a binary package,
 * installed with `emerge --usepkgonly` in the VM, which has no key. */
#include <stdio.h>

int main(void)
{
	printf("binhello from the binary host\n");
	return 0;
}
