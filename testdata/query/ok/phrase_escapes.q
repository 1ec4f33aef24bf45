"say \"hi\" \\ now"
