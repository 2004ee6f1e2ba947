"""Pay by phone: the one-time codes, the checkout and the driver's payment pages."""
