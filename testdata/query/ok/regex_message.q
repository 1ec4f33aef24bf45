/connection (refused|reset)/
