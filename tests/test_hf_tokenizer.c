#include "testutil.h"
int main(void) { AQ_TEST_END(); }
